vlmagent eval --run runs/learn/blackjack-s1-lr1e-5 --policy runs/learn/blackjack-s1/sft --out runs/learn/blackjack-s1-lr1e-5/eval/000000
vlmagent loop --run runs/learn/blackjack-s1-lr1e-5 --iterations 10
vlmagent eval --run runs/learn/blackjack-s1-lr1e-5 --policy oracle --out runs/learn/blackjack-s1-lr1e-5/eval_oracle
vlmagent eval --run runs/learn/blackjack-s1-lr1e-5 --policy random --out runs/learn/blackjack-s1-lr1e-5/eval_random
vlmagent report runs/learn/blackjack-s1-lr1e-5
