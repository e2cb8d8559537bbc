vlmagent init-model runs/learn/ezpoints-s1/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/ezpoints-s1 --episodes 512
vlmagent sft --run runs/learn/ezpoints-s1 --data runs/learn/ezpoints-s1/demos --policy runs/learn/ezpoints-s1/base --out runs/learn/ezpoints-s1/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/ezpoints-s1 --data runs/learn/ezpoints-s1/demos --policy runs/learn/ezpoints-s1/sft_read --out runs/learn/ezpoints-s1/sft
vlmagent eval --run runs/learn/ezpoints-s1 --policy runs/learn/ezpoints-s1/sft --out runs/learn/ezpoints-s1/eval/000000
vlmagent loop --run runs/learn/ezpoints-s1 --iterations 16
vlmagent eval --run runs/learn/ezpoints-s1 --policy oracle --out runs/learn/ezpoints-s1/eval_oracle
vlmagent eval --run runs/learn/ezpoints-s1 --policy random --out runs/learn/ezpoints-s1/eval_random
vlmagent report runs/learn/ezpoints-s1
