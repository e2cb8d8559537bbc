vlmagent eval --run runs/learn/blackjack-grpo --policy runs/learn/blackjack/sft --out runs/learn/blackjack-grpo/eval/000000
vlmagent loop --run runs/learn/blackjack-grpo --iterations 10
vlmagent eval --run runs/learn/blackjack-grpo --policy oracle --out runs/learn/blackjack-grpo/eval_oracle
vlmagent eval --run runs/learn/blackjack-grpo --policy random --out runs/learn/blackjack-grpo/eval_random
vlmagent report runs/learn/blackjack-grpo
