vlmagent eval --run runs/learn/numberline-skip-128 --policy runs/learn/numberline-skip/sft --out runs/learn/numberline-skip-128/eval/000000
vlmagent loop --run runs/learn/numberline-skip-128 --iterations 20
vlmagent eval --run runs/learn/numberline-skip-128 --policy oracle --out runs/learn/numberline-skip-128/eval_oracle
vlmagent eval --run runs/learn/numberline-skip-128 --policy random --out runs/learn/numberline-skip-128/eval_random
vlmagent report runs/learn/numberline-skip-128
