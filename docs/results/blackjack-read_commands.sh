vlmagent init-model runs/learn/blackjack-read/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/blackjack-read --episodes 1024
vlmagent sft --run runs/learn/blackjack-read --data runs/learn/blackjack-read/demos --policy runs/learn/blackjack-read/base --out runs/learn/blackjack-read/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/blackjack-read --data runs/learn/blackjack-read/demos --policy runs/learn/blackjack-read/sft_read --out runs/learn/blackjack-read/sft
vlmagent eval --run runs/learn/blackjack-read --policy runs/learn/blackjack-read/sft --out runs/learn/blackjack-read/eval/000000
vlmagent eval --run runs/learn/blackjack-read --policy oracle --out runs/learn/blackjack-read/eval_oracle
vlmagent eval --run runs/learn/blackjack-read --policy random --out runs/learn/blackjack-read/eval_random
vlmagent eval --run runs/learn/blackjack-read --policy runs/learn/blackjack-read/sft --temperature 0.2 --out runs/learn/blackjack-read/eval_T0.2/sft
vlmagent loop --run runs/learn/blackjack-read --iterations 10
vlmagent eval --run runs/learn/blackjack-read --policy runs/learn/blackjack-read/ckpt/000010 --temperature 0.2 --out runs/learn/blackjack-read/eval_T0.2/rl
vlmagent report runs/learn/blackjack-read
