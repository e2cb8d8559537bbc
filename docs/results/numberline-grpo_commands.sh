vlmagent eval --run runs/learn/numberline-grpo --policy runs/learn/numberline/sft --out runs/learn/numberline-grpo/eval/000000
vlmagent loop --run runs/learn/numberline-grpo --iterations 10
vlmagent eval --run runs/learn/numberline-grpo --policy oracle --out runs/learn/numberline-grpo/eval_oracle
vlmagent eval --run runs/learn/numberline-grpo --policy random --out runs/learn/numberline-grpo/eval_random
vlmagent report runs/learn/numberline-grpo
