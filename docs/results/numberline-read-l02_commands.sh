vlmagent init-model runs/learn/numberline-read-l02/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-read-l02 --episodes 256
vlmagent sft --run runs/learn/numberline-read-l02 --data runs/learn/numberline-read-l02/demos --policy runs/learn/numberline-read-l02/base --out runs/learn/numberline-read-l02/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/numberline-read-l02 --data runs/learn/numberline-read-l02/demos --policy runs/learn/numberline-read-l02/sft_read --out runs/learn/numberline-read-l02/sft
vlmagent eval --run runs/learn/numberline-read-l02 --policy runs/learn/numberline-read-l02/sft --out runs/learn/numberline-read-l02/eval/000000
vlmagent loop --run runs/learn/numberline-read-l02 --iterations 20
vlmagent eval --run runs/learn/numberline-read-l02 --policy oracle --out runs/learn/numberline-read-l02/eval_oracle
vlmagent eval --run runs/learn/numberline-read-l02 --policy random --out runs/learn/numberline-read-l02/eval_random
vlmagent report runs/learn/numberline-read-l02
