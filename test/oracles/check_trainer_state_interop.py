"""trainer_state.json interop with transformers (npm run test:reference).

  load PATH...   TrainerState.load_from_json on each file bertkit wrote; prints
                 what transformers read (one JSON line)
  hf OUT_DIR     trains a tiny BERT with transformers' Trainer (4 steps, logging
                 every step, evaluation and checkpoints every 2 steps, best model
                 by accuracy) and prints the keys of its trainer_state.json: the
                 top level and each kind of log_history entry, and total_flos
"""
import json
import sys


def load(paths):
    from transformers.trainer_callback import TrainerState

    out = []
    for path in paths:
        state = TrainerState.load_from_json(path)
        out.append({
            "path": path,
            "global_step": state.global_step,
            "epoch": state.epoch,
            "max_steps": state.max_steps,
            "best_metric": state.best_metric,
            "best_global_step": state.best_global_step,
            "best_model_checkpoint": state.best_model_checkpoint,
            "total_flos": state.total_flos,
            "logging_steps": state.logging_steps,
            "log_history": state.log_history,
        })
    print(json.dumps(out))


def hf(out_dir):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(config)

    class Rows(torch.utils.data.Dataset):
        def __init__(self, n):
            self.rows = [{"input_ids": torch.tensor([1, 2 + i % 5, 3, 4, 5, 6]), "labels": torch.tensor(i % 2)} for i in range(n)]

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            return self.rows[i]

    def accuracy(p):
        return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}

    args = TrainingArguments(out_dir, max_steps=4, per_device_train_batch_size=4, per_device_eval_batch_size=4,
                             logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                             metric_for_best_model="accuracy", load_best_model_at_end=True, report_to="none",
                             use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(16), eval_dataset=Rows(8), compute_metrics=accuracy)
    trainer.train()
    with open(f"{out_dir}/checkpoint-4/trainer_state.json") as f:
        state = json.load(f)
    final = trainer.state.log_history[-1]

    def kind(entry):
        if "loss" in entry:
            return "train"
        if "eval_loss" in entry:
            return "eval"
        return "final" if "train_loss" in entry else "other"

    kinds = {}
    for entry in state["log_history"] + [final]:
        kinds.setdefault(kind(entry), sorted(entry))
    print(json.dumps({"top": sorted(state), "entries": kinds, "total_flos": final["total_flos"],
                      "non_embedding_parameters": model.num_parameters(exclude_embeddings=True)}))


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(sys.argv[2:])
    elif sys.argv[1] == "hf":
        hf(sys.argv[2])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
