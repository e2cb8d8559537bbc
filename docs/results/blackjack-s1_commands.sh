vlmagent init-model runs/learn/blackjack-s1/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/blackjack-s1 --episodes 1024
vlmagent sft --run runs/learn/blackjack-s1 --data runs/learn/blackjack-s1/demos --policy runs/learn/blackjack-s1/base --out runs/learn/blackjack-s1/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/blackjack-s1 --data runs/learn/blackjack-s1/demos --policy runs/learn/blackjack-s1/sft_read --out runs/learn/blackjack-s1/sft
vlmagent eval --run runs/learn/blackjack-s1 --policy runs/learn/blackjack-s1/sft --out runs/learn/blackjack-s1/eval/000000
vlmagent loop --run runs/learn/blackjack-s1 --iterations 10
vlmagent eval --run runs/learn/blackjack-s1 --policy oracle --out runs/learn/blackjack-s1/eval_oracle
vlmagent eval --run runs/learn/blackjack-s1 --policy random --out runs/learn/blackjack-s1/eval_random
vlmagent report runs/learn/blackjack-s1
