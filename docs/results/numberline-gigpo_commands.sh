vlmagent eval --run runs/learn/numberline-gigpo --policy runs/learn/numberline/sft --out runs/learn/numberline-gigpo/eval/000000
vlmagent loop --run runs/learn/numberline-gigpo --iterations 10
vlmagent eval --run runs/learn/numberline-gigpo --policy oracle --out runs/learn/numberline-gigpo/eval_oracle
vlmagent eval --run runs/learn/numberline-gigpo --policy random --out runs/learn/numberline-gigpo/eval_random
vlmagent report runs/learn/numberline-gigpo
