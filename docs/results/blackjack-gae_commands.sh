vlmagent eval --run runs/learn/blackjack-gae --policy runs/learn/blackjack/sft --out runs/learn/blackjack-gae/eval/000000
vlmagent loop --run runs/learn/blackjack-gae --iterations 10
vlmagent eval --run runs/learn/blackjack-gae --policy oracle --out runs/learn/blackjack-gae/eval_oracle
vlmagent eval --run runs/learn/blackjack-gae --policy random --out runs/learn/blackjack-gae/eval_random
vlmagent report runs/learn/blackjack-gae
