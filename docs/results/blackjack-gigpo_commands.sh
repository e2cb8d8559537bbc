vlmagent eval --run runs/learn/blackjack-gigpo --policy runs/learn/blackjack/sft --out runs/learn/blackjack-gigpo/eval/000000
vlmagent loop --run runs/learn/blackjack-gigpo --iterations 10
vlmagent eval --run runs/learn/blackjack-gigpo --policy oracle --out runs/learn/blackjack-gigpo/eval_oracle
vlmagent eval --run runs/learn/blackjack-gigpo --policy random --out runs/learn/blackjack-gigpo/eval_random
vlmagent report runs/learn/blackjack-gigpo
