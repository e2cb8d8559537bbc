vlmagent init-model runs/learn/points24/base --size tiny --image-size 224 --patch-size 28
vlmagent demos --run runs/learn/points24 --episodes 4096
vlmagent sft --run runs/learn/points24 --data runs/learn/points24/demos --policy runs/learn/points24/base --out runs/learn/points24/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/points24 --data runs/learn/points24/demos --policy runs/learn/points24/sft_read --out runs/learn/points24/sft
vlmagent eval --run runs/learn/points24 --policy runs/learn/points24/sft --out runs/learn/points24/eval/000000
vlmagent loop --run runs/learn/points24 --iterations 2
vlmagent eval --run runs/learn/points24 --policy oracle --out runs/learn/points24/eval_oracle
vlmagent eval --run runs/learn/points24 --policy random --out runs/learn/points24/eval_random
vlmagent report runs/learn/points24
