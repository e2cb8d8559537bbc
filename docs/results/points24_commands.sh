vlmagent init-model runs/learn/points24/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/points24 --episodes 512
vlmagent sft --run runs/learn/points24 --data runs/learn/points24/demos --policy runs/learn/points24/base --out runs/learn/points24/sft
vlmagent eval --run runs/learn/points24 --policy runs/learn/points24/sft --out runs/learn/points24/eval/000000
vlmagent loop --run runs/learn/points24 --iterations 5  # stopped in iteration 0: the SFT policy never succeeds, so RL has nothing to reinforce
vlmagent eval --run runs/learn/points24 --policy oracle --out runs/learn/points24/eval_oracle
