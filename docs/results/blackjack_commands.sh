vlmagent init-model runs/learn/blackjack/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/blackjack --episodes 1024
vlmagent sft --run runs/learn/blackjack --data runs/learn/blackjack/demos --policy runs/learn/blackjack/base --out runs/learn/blackjack/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/blackjack --data runs/learn/blackjack/demos --policy runs/learn/blackjack/sft_read --out runs/learn/blackjack/sft
vlmagent eval --run runs/learn/blackjack --policy runs/learn/blackjack/sft --out runs/learn/blackjack/eval/000000
vlmagent loop --run runs/learn/blackjack --iterations 10
vlmagent eval --run runs/learn/blackjack --policy oracle --out runs/learn/blackjack/eval_oracle
vlmagent eval --run runs/learn/blackjack --policy random --out runs/learn/blackjack/eval_random
vlmagent report runs/learn/blackjack
