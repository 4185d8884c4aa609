package io.trellis2lora.core.api;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;

/** A JSON answer. */
public record ApiResponse(int status, String body) {

    public static ApiResponse json(int status, Object value) {
        return new ApiResponse(status, Json.write(value));
    }

    public static ApiResponse error(int status, String message) {
        ObjectNode n = Json.MAPPER.createObjectNode();
        n.put("error", message);
        return json(status, n);
    }

    /** 400 with every problem, one per array item (and all of them joined in "error" for simple clients). */
    public static ApiResponse refused(InputRefusedException e) {
        return refused(400, e);
    }

    /** {@code status} (e.g. 422) with every problem, as {@link #refused(InputRefusedException)}. */
    public static ApiResponse refused(int status, InputRefusedException e) {
        ObjectNode n = Json.MAPPER.createObjectNode();
        n.put("error", String.join("; ", e.problems()));
        e.problems().forEach(n.putArray("problems")::add);
        return json(status, n);
    }
}
