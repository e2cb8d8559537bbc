vlmagent init-model runs/learn/blackjack-noisy/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/blackjack-noisy --episodes 1024
vlmagent sft --run runs/learn/blackjack-noisy --data runs/learn/blackjack-noisy/demos --policy runs/learn/blackjack-noisy/base --out runs/learn/blackjack-noisy/sft
vlmagent eval --run runs/learn/blackjack-noisy --policy runs/learn/blackjack-noisy/sft --out runs/learn/blackjack-noisy/eval/000000
vlmagent loop --run runs/learn/blackjack-noisy --iterations 10
vlmagent eval --run runs/learn/blackjack-noisy --policy oracle --out runs/learn/blackjack-noisy/eval_oracle
vlmagent report runs/learn/blackjack-noisy
