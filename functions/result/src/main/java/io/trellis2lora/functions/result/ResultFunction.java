package io.trellis2lora.functions.result;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import io.trellis2lora.core.api.ApiGatewayProxy;
import io.trellis2lora.core.api.ResultOperation;
import io.trellis2lora.core.api.Services;
import java.util.Map;

/** GET /requests/{request_id}: the result JSON with presigned https URLs for its files. */
public class ResultFunction implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    private final ResultOperation operation;

    /** What Lambda runs: settings from the environment, AWS clients from the default chain. */
    public ResultFunction() {
        this(new ResultOperation(Services.fromEnvironment()));
    }

    public ResultFunction(ResultOperation operation) {
        this.operation = operation;
    }

    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        return ApiGatewayProxy.handle(event, operation);
    }
}
