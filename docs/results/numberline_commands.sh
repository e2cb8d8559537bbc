vlmagent init-model runs/learn/numberline/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline --episodes 256
vlmagent sft --run runs/learn/numberline --data runs/learn/numberline/demos --policy runs/learn/numberline/base --out runs/learn/numberline/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/numberline --data runs/learn/numberline/demos --policy runs/learn/numberline/sft_read --out runs/learn/numberline/sft
vlmagent eval --run runs/learn/numberline --policy runs/learn/numberline/sft --out runs/learn/numberline/eval/000000
vlmagent loop --run runs/learn/numberline --iterations 20
vlmagent eval --run runs/learn/numberline --policy oracle --out runs/learn/numberline/eval_oracle
vlmagent eval --run runs/learn/numberline --policy random --out runs/learn/numberline/eval_random
vlmagent report runs/learn/numberline
