vlmagent init-model runs/learn/numberline-nocot/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-nocot --episodes 256
vlmagent sft --run runs/learn/numberline-nocot --data runs/learn/numberline-nocot/demos --policy runs/learn/numberline-nocot/base --out runs/learn/numberline-nocot/sft
vlmagent eval --run runs/learn/numberline-nocot --policy runs/learn/numberline-nocot/sft --out runs/learn/numberline-nocot/eval/000000
vlmagent loop --run runs/learn/numberline-nocot --iterations 10
vlmagent eval --run runs/learn/numberline-nocot --policy oracle --out runs/learn/numberline-nocot/eval_oracle
vlmagent eval --run runs/learn/numberline-nocot --policy random --out runs/learn/numberline-nocot/eval_random
vlmagent report runs/learn/numberline-nocot
