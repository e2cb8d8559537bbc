vlmagent init-model runs/learn/numberline-ent/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-ent --episodes 256
vlmagent sft --run runs/learn/numberline-ent --data runs/learn/numberline-ent/demos --policy runs/learn/numberline-ent/base --out runs/learn/numberline-ent/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/numberline-ent --data runs/learn/numberline-ent/demos --policy runs/learn/numberline-ent/sft_read --out runs/learn/numberline-ent/sft
vlmagent eval --run runs/learn/numberline-ent --policy runs/learn/numberline-ent/sft --out runs/learn/numberline-ent/eval/000000
vlmagent loop --run runs/learn/numberline-ent --iterations 20
vlmagent eval --run runs/learn/numberline-ent --policy oracle --out runs/learn/numberline-ent/eval_oracle
vlmagent eval --run runs/learn/numberline-ent --policy random --out runs/learn/numberline-ent/eval_random
vlmagent report runs/learn/numberline-ent
