vlmagent eval --run runs/learn/numberline-ent0.1 --policy runs/learn/numberline-ent/sft --out runs/learn/numberline-ent0.1/eval/000000
vlmagent loop --run runs/learn/numberline-ent0.1 --iterations 20
vlmagent eval --run runs/learn/numberline-ent0.1 --policy oracle --out runs/learn/numberline-ent0.1/eval_oracle
vlmagent eval --run runs/learn/numberline-ent0.1 --policy random --out runs/learn/numberline-ent0.1/eval_random
vlmagent report runs/learn/numberline-ent0.1
