vlmagent init-model runs/learn/numberline-seed1/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-seed1 --episodes 256
vlmagent sft --run runs/learn/numberline-seed1 --data runs/learn/numberline-seed1/demos --policy runs/learn/numberline-seed1/base --out runs/learn/numberline-seed1/sft
vlmagent eval --run runs/learn/numberline-seed1 --policy runs/learn/numberline-seed1/sft --out runs/learn/numberline-seed1/eval/000000
vlmagent loop --run runs/learn/numberline-seed1 --iterations 10
vlmagent eval --run runs/learn/numberline-seed1 --policy oracle --out runs/learn/numberline-seed1/eval_oracle
vlmagent eval --run runs/learn/numberline-seed1 --policy random --out runs/learn/numberline-seed1/eval_random
vlmagent report runs/learn/numberline-seed1
