vlmagent init-model runs/learn/numberline-s1-sft3000/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-s1-sft3000 --episodes 256
vlmagent sft --run runs/learn/numberline-s1-sft3000 --data runs/learn/numberline-s1-sft3000/demos --policy runs/learn/numberline-s1-sft3000/base --out runs/learn/numberline-s1-sft3000/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/numberline-s1-sft3000 --data runs/learn/numberline-s1-sft3000/demos --policy runs/learn/numberline-s1-sft3000/sft_read --out runs/learn/numberline-s1-sft3000/sft
vlmagent eval --run runs/learn/numberline-s1-sft3000 --policy runs/learn/numberline-s1-sft3000/sft --out runs/learn/numberline-s1-sft3000/eval/000000
vlmagent loop --run runs/learn/numberline-s1-sft3000 --iterations 20
vlmagent eval --run runs/learn/numberline-s1-sft3000 --policy oracle --out runs/learn/numberline-s1-sft3000/eval_oracle
vlmagent eval --run runs/learn/numberline-s1-sft3000 --policy random --out runs/learn/numberline-s1-sft3000/eval_random
vlmagent report runs/learn/numberline-s1-sft3000
