vlmagent eval --run runs/learn/ezpoints-gigpo --policy runs/learn/ezpoints/sft --out runs/learn/ezpoints-gigpo/eval/000000
vlmagent loop --run runs/learn/ezpoints-gigpo --iterations 8
vlmagent eval --run runs/learn/ezpoints-gigpo --policy oracle --out runs/learn/ezpoints-gigpo/eval_oracle
vlmagent eval --run runs/learn/ezpoints-gigpo --policy random --out runs/learn/ezpoints-gigpo/eval_random
vlmagent report runs/learn/ezpoints-gigpo
