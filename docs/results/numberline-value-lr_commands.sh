vlmagent eval --run runs/learn/numberline-value-lr --policy runs/learn/numberline/sft --out runs/learn/numberline-value-lr/eval/000000
vlmagent loop --run runs/learn/numberline-value-lr --iterations 10
vlmagent eval --run runs/learn/numberline-value-lr --policy oracle --out runs/learn/numberline-value-lr/eval_oracle
vlmagent eval --run runs/learn/numberline-value-lr --policy random --out runs/learn/numberline-value-lr/eval_random
vlmagent report runs/learn/numberline-value-lr
