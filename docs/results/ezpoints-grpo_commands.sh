vlmagent eval --run runs/learn/ezpoints-grpo --policy runs/learn/ezpoints/sft --out runs/learn/ezpoints-grpo/eval/000000
vlmagent loop --run runs/learn/ezpoints-grpo --iterations 8
vlmagent eval --run runs/learn/ezpoints-grpo --policy oracle --out runs/learn/ezpoints-grpo/eval_oracle
vlmagent eval --run runs/learn/ezpoints-grpo --policy random --out runs/learn/ezpoints-grpo/eval_random
vlmagent report runs/learn/ezpoints-grpo
