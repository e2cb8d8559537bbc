vlmagent eval --run runs/learn/numberline-gigpo-30 --policy runs/learn/numberline/sft --out runs/learn/numberline-gigpo-30/eval/000000
vlmagent loop --run runs/learn/numberline-gigpo-30 --iterations 30
vlmagent eval --run runs/learn/numberline-gigpo-30 --policy oracle --out runs/learn/numberline-gigpo-30/eval_oracle
vlmagent eval --run runs/learn/numberline-gigpo-30 --policy random --out runs/learn/numberline-gigpo-30/eval_random
vlmagent report runs/learn/numberline-gigpo-30
