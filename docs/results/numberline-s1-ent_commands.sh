vlmagent init-model runs/learn/numberline-s1-ent/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-s1-ent --episodes 256
vlmagent sft --run runs/learn/numberline-s1-ent --data runs/learn/numberline-s1-ent/demos --policy runs/learn/numberline-s1-ent/base --out runs/learn/numberline-s1-ent/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/numberline-s1-ent --data runs/learn/numberline-s1-ent/demos --policy runs/learn/numberline-s1-ent/sft_read --out runs/learn/numberline-s1-ent/sft
vlmagent eval --run runs/learn/numberline-s1-ent --policy runs/learn/numberline-s1-ent/sft --out runs/learn/numberline-s1-ent/eval/000000
vlmagent loop --run runs/learn/numberline-s1-ent --iterations 20
vlmagent eval --run runs/learn/numberline-s1-ent --policy oracle --out runs/learn/numberline-s1-ent/eval_oracle
vlmagent eval --run runs/learn/numberline-s1-ent --policy random --out runs/learn/numberline-s1-ent/eval_random
vlmagent report runs/learn/numberline-s1-ent
