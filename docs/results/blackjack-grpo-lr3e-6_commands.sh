vlmagent eval --run runs/learn/blackjack-grpo-lr3e-6 --policy runs/learn-check/blackjack/sft --out runs/learn/blackjack-grpo-lr3e-6/eval/000000
vlmagent loop --run runs/learn/blackjack-grpo-lr3e-6 --iterations 10
vlmagent eval --run runs/learn/blackjack-grpo-lr3e-6 --policy oracle --out runs/learn/blackjack-grpo-lr3e-6/eval_oracle
vlmagent eval --run runs/learn/blackjack-grpo-lr3e-6 --policy random --out runs/learn/blackjack-grpo-lr3e-6/eval_random
vlmagent eval --run runs/learn/blackjack-grpo-lr3e-6 --policy runs/learn-check/blackjack/sft --temperature 0.2 --out runs/learn/blackjack-grpo-lr3e-6/eval_T0.2/sft
vlmagent eval --run runs/learn/blackjack-grpo-lr3e-6 --policy runs/learn/blackjack-grpo-lr3e-6/ckpt/000010 --temperature 0.2 --out runs/learn/blackjack-grpo-lr3e-6/eval_T0.2/rl
vlmagent report runs/learn/blackjack-grpo-lr3e-6
