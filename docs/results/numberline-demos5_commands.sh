vlmagent init-model runs/learn/numberline-demos5/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/numberline-demos5 --episodes 256
vlmagent sft --run runs/learn/numberline-demos5 --data runs/learn/numberline-demos5/demos --policy runs/learn/numberline-demos5/base --out runs/learn/numberline-demos5/sft
vlmagent eval --run runs/learn/numberline-demos5 --policy runs/learn/numberline-demos5/sft --out runs/learn/numberline-demos5/eval/000000
vlmagent loop --run runs/learn/numberline-demos5 --iterations 20
vlmagent eval --run runs/learn/numberline-demos5 --policy oracle --out runs/learn/numberline-demos5/eval_oracle
vlmagent eval --run runs/learn/numberline-demos5 --policy random --out runs/learn/numberline-demos5/eval_random
vlmagent report runs/learn/numberline-demos5
