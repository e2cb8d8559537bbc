vlmagent eval --run runs/learn/numberline-lambda1 --policy runs/learn/numberline/sft --out runs/learn/numberline-lambda1/eval/000000
vlmagent loop --run runs/learn/numberline-lambda1 --iterations 10
vlmagent eval --run runs/learn/numberline-lambda1 --policy oracle --out runs/learn/numberline-lambda1/eval_oracle
vlmagent eval --run runs/learn/numberline-lambda1 --policy random --out runs/learn/numberline-lambda1/eval_random
vlmagent report runs/learn/numberline-lambda1
