vlmagent init-model runs/learn/numberline-gigpo-penalty/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-gigpo-penalty --episodes 256
vlmagent sft --run runs/learn/numberline-gigpo-penalty --data runs/learn/numberline-gigpo-penalty/demos --policy runs/learn/numberline-gigpo-penalty/base --out runs/learn/numberline-gigpo-penalty/sft
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy runs/learn/numberline-gigpo-penalty/sft --out runs/learn/numberline-gigpo-penalty/eval/000000
vlmagent loop --run runs/learn/numberline-gigpo-penalty --iterations 20
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy oracle --out runs/learn/numberline-gigpo-penalty/eval_oracle
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy random --out runs/learn/numberline-gigpo-penalty/eval_random
vlmagent report runs/learn/numberline-gigpo-penalty
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy runs/learn/numberline-gigpo-penalty/sft --temperature 0.2 --out runs/learn/numberline-gigpo-penalty/eval_T0.2/sft --shards 0/2
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy runs/learn/numberline-gigpo-penalty/sft --temperature 0.2 --out runs/learn/numberline-gigpo-penalty/eval_T0.2/sft --shards 1/2
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy runs/learn/numberline-gigpo-penalty/sft --temperature 0.2 --out runs/learn/numberline-gigpo-penalty/eval_T0.2/sft
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy runs/learn/numberline-gigpo-penalty/ckpt/000020 --temperature 0.2 --out runs/learn/numberline-gigpo-penalty/eval_T0.2/rl --shards 0/2
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy runs/learn/numberline-gigpo-penalty/ckpt/000020 --temperature 0.2 --out runs/learn/numberline-gigpo-penalty/eval_T0.2/rl --shards 1/2
vlmagent eval --run runs/learn/numberline-gigpo-penalty --policy runs/learn/numberline-gigpo-penalty/ckpt/000020 --temperature 0.2 --out runs/learn/numberline-gigpo-penalty/eval_T0.2/rl
