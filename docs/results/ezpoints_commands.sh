vlmagent init-model runs/learn/ezpoints/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/ezpoints --episodes 512
vlmagent sft --run runs/learn/ezpoints --data runs/learn/ezpoints/demos --policy runs/learn/ezpoints/base --out runs/learn/ezpoints/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/ezpoints --data runs/learn/ezpoints/demos --policy runs/learn/ezpoints/sft_read --out runs/learn/ezpoints/sft
vlmagent eval --run runs/learn/ezpoints --policy runs/learn/ezpoints/sft --out runs/learn/ezpoints/eval/000000
vlmagent loop --run runs/learn/ezpoints --iterations 16
vlmagent eval --run runs/learn/ezpoints --policy oracle --out runs/learn/ezpoints/eval_oracle
vlmagent eval --run runs/learn/ezpoints --policy random --out runs/learn/ezpoints/eval_random
vlmagent report runs/learn/ezpoints
