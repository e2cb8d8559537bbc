vlmagent alfworld-games runs/learn/alfworld/games/train --per-type 40 --seed 0
vlmagent alfworld-games runs/learn/alfworld/games/heldout --per-type 10 --seed 1
vlmagent init-model runs/learn/alfworld/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/alfworld --episodes 480
vlmagent sft --run runs/learn/alfworld --data runs/learn/alfworld/demos --policy runs/learn/alfworld/base --out runs/learn/alfworld/sft
vlmagent eval --run runs/learn/alfworld --policy runs/learn/alfworld/sft --out runs/learn/alfworld/eval/000000
vlmagent loop --run runs/learn/alfworld --iterations 2
vlmagent eval --run runs/learn/alfworld --policy oracle --out runs/learn/alfworld/eval_oracle
vlmagent eval --run runs/learn/alfworld --policy random --out runs/learn/alfworld/eval_random
vlmagent report runs/learn/alfworld
