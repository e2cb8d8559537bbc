vlmagent eval --run runs/learn/numberline-rl30 --policy runs/learn/numberline/sft --out runs/learn/numberline-rl30/eval/000000
vlmagent loop --run runs/learn/numberline-rl30 --iterations 30
vlmagent eval --run runs/learn/numberline-rl30 --policy oracle --out runs/learn/numberline-rl30/eval_oracle
vlmagent eval --run runs/learn/numberline-rl30 --policy random --out runs/learn/numberline-rl30/eval_random
vlmagent report runs/learn/numberline-rl30
