package io.trellis2lora.core.testing;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;

/**
 * TEST STAND-IN for what a successful training job leaves at {@code adapters/<denoiser>.json} (the worker's
 * trellis2_worker/train/trainer.py writes the same fields): the contract's fields plus its metrics.
 */
public final class WorkerRecords {
    private WorkerRecords() {
    }

    public static ObjectNode of(Denoiser d, TrainingRequest request, String loraUri, long size) {
        ObjectNode r = Json.MAPPER.createObjectNode();
        r.put("denoiser", d.wireName());
        r.put("resolution", request.resolution());
        r.putObject("lora_file").put("url", loraUri).put("content_type", "application/octet-stream")
                .put("file_name", d.wireName() + ".safetensors").put("file_size", size);
        r.put("rank", request.rank());
        r.put("training_steps", request.trainingSteps());
        r.put("learning_rate", request.learningRate().doubleValue());
        r.putObject("metrics").put("heldout_flow_loss_base", 0.52).put("heldout_flow_loss_adapted", 0.47)
                .put("heldout_objects", 4).put("train_loss_first", 0.9).put("train_loss_last", 0.5);
        return r;
    }

    public static byte[] bytes(Denoiser d, TrainingRequest request, String loraUri, long size) {
        return Json.pretty(of(d, request, loraUri, size)).getBytes();
    }
}
