vlmagent init-model runs/learn/blackjack-demos0/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/blackjack-demos0 --episodes 1024
vlmagent sft --run runs/learn/blackjack-demos0 --data runs/learn/blackjack-demos0/demos --policy runs/learn/blackjack-demos0/base --out runs/learn/blackjack-demos0/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/blackjack-demos0 --data runs/learn/blackjack-demos0/demos --policy runs/learn/blackjack-demos0/sft_read --out runs/learn/blackjack-demos0/sft
vlmagent eval --run runs/learn/blackjack-demos0 --policy runs/learn/blackjack-demos0/sft --out runs/learn/blackjack-demos0/eval/000000
vlmagent loop --run runs/learn/blackjack-demos0 --iterations 10
vlmagent eval --run runs/learn/blackjack-demos0 --policy oracle --out runs/learn/blackjack-demos0/eval_oracle
vlmagent eval --run runs/learn/blackjack-demos0 --policy random --out runs/learn/blackjack-demos0/eval_random
vlmagent report runs/learn/blackjack-demos0
