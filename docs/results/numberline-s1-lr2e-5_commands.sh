vlmagent eval --run runs/learn/numberline-s1-lr2e-5 --policy runs/learn/numberline-s1/sft --out runs/learn/numberline-s1-lr2e-5/eval/000000
vlmagent loop --run runs/learn/numberline-s1-lr2e-5 --iterations 20
vlmagent eval --run runs/learn/numberline-s1-lr2e-5 --policy oracle --out runs/learn/numberline-s1-lr2e-5/eval_oracle
vlmagent eval --run runs/learn/numberline-s1-lr2e-5 --policy random --out runs/learn/numberline-s1-lr2e-5/eval_random
vlmagent report runs/learn/numberline-s1-lr2e-5
