vlmagent eval --run runs/learn/blackjack-grpo-lr1e-5 --policy runs/learn-check/blackjack/sft --out runs/learn/blackjack-grpo-lr1e-5/eval/000000
vlmagent loop --run runs/learn/blackjack-grpo-lr1e-5 --iterations 10
vlmagent eval --run runs/learn/blackjack-grpo-lr1e-5 --policy oracle --out runs/learn/blackjack-grpo-lr1e-5/eval_oracle
vlmagent eval --run runs/learn/blackjack-grpo-lr1e-5 --policy random --out runs/learn/blackjack-grpo-lr1e-5/eval_random
vlmagent eval --run runs/learn/blackjack-grpo-lr1e-5 --policy runs/learn-check/blackjack/sft --temperature 0.2 --out runs/learn/blackjack-grpo-lr1e-5/eval_T0.2/sft
vlmagent eval --run runs/learn/blackjack-grpo-lr1e-5 --policy runs/learn/blackjack-grpo-lr1e-5/ckpt/000010 --temperature 0.2 --out runs/learn/blackjack-grpo-lr1e-5/eval_T0.2/rl
vlmagent report runs/learn/blackjack-grpo-lr1e-5
