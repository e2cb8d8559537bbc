vlmagent sft --run runs/learn/alfworld --data runs/learn/alfworld/demos --policy runs/learn/alfworld/base --out runs/learn/alfworld/sft
vlmagent eval --run runs/learn/alfworld --policy runs/learn/alfworld/sft --out runs/learn/alfworld/eval/000000
vlmagent loop --run runs/learn/alfworld --iterations 2
vlmagent eval --run runs/learn/alfworld --policy oracle --out runs/learn/alfworld/eval_oracle
vlmagent eval --run runs/learn/alfworld --policy random --out runs/learn/alfworld/eval_random
vlmagent report runs/learn/alfworld
