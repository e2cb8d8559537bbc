vlmagent init-model runs/learn/blackjack-1h/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/blackjack-1h --episodes 1024
vlmagent sft --run runs/learn/blackjack-1h --data runs/learn/blackjack-1h/demos --policy runs/learn/blackjack-1h/base --out runs/learn/blackjack-1h/sft
vlmagent eval --run runs/learn/blackjack-1h --policy runs/learn/blackjack-1h/sft --out runs/learn/blackjack-1h/eval/000000
vlmagent loop --run runs/learn/blackjack-1h --iterations 10
vlmagent eval --run runs/learn/blackjack-1h --policy oracle --out runs/learn/blackjack-1h/eval_oracle
vlmagent eval --run runs/learn/blackjack-1h --policy random --out runs/learn/blackjack-1h/eval_random
vlmagent report runs/learn/blackjack-1h
