vlmagent init-model /work/main/runs/learn/blackjack/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run /work/main/runs/learn/blackjack --episodes 1024
vlmagent sft --run /work/main/runs/learn/blackjack --data /work/main/runs/learn/blackjack/demos --policy /work/main/runs/learn/blackjack/base --out /work/main/runs/learn/blackjack/sft
vlmagent eval --run /work/main/runs/learn/blackjack --policy /work/main/runs/learn/blackjack/sft --out /work/main/runs/learn/blackjack/eval/000000
vlmagent loop --run /work/main/runs/learn/blackjack --iterations 10
vlmagent eval --run /work/main/runs/learn/blackjack --policy oracle --out /work/main/runs/learn/blackjack/eval_oracle
vlmagent report /work/main/runs/learn/blackjack
