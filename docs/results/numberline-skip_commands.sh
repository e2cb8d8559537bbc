vlmagent init-model runs/learn/numberline-skip/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-skip --episodes 256
vlmagent sft --run runs/learn/numberline-skip --data runs/learn/numberline-skip/demos --policy runs/learn/numberline-skip/base --out runs/learn/numberline-skip/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/numberline-skip --data runs/learn/numberline-skip/demos --policy runs/learn/numberline-skip/sft_read --out runs/learn/numberline-skip/sft
vlmagent eval --run runs/learn/numberline-skip --policy runs/learn/numberline-skip/sft --out runs/learn/numberline-skip/eval/000000
vlmagent loop --run runs/learn/numberline-skip --iterations 20
vlmagent eval --run runs/learn/numberline-skip --policy oracle --out runs/learn/numberline-skip/eval_oracle
vlmagent eval --run runs/learn/numberline-skip --policy random --out runs/learn/numberline-skip/eval_random
vlmagent report runs/learn/numberline-skip
