vlmagent init-model runs/learn/numberline-read/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-read --episodes 256
vlmagent sft --run runs/learn/numberline-read --data runs/learn/numberline-read/demos --policy runs/learn/numberline-read/base --out runs/learn/numberline-read/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/numberline-read --data runs/learn/numberline-read/demos --policy runs/learn/numberline-read/sft_read --out runs/learn/numberline-read/sft
vlmagent eval --run runs/learn/numberline-read --policy runs/learn/numberline-read/sft --out runs/learn/numberline-read/eval/000000
vlmagent loop --run runs/learn/numberline-read --iterations 20
vlmagent eval --run runs/learn/numberline-read --policy oracle --out runs/learn/numberline-read/eval_oracle
vlmagent eval --run runs/learn/numberline-read --policy random --out runs/learn/numberline-read/eval_random
vlmagent report runs/learn/numberline-read
