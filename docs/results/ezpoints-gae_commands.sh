vlmagent eval --run runs/learn/ezpoints-gae --policy runs/learn/ezpoints/sft --out runs/learn/ezpoints-gae/eval/000000
vlmagent loop --run runs/learn/ezpoints-gae --iterations 8
vlmagent eval --run runs/learn/ezpoints-gae --policy oracle --out runs/learn/ezpoints-gae/eval_oracle
vlmagent eval --run runs/learn/ezpoints-gae --policy random --out runs/learn/ezpoints-gae/eval_random
vlmagent report runs/learn/ezpoints-gae
