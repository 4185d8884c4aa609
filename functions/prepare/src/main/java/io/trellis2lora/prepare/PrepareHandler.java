package io.trellis2lora.prepare;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.orchestration.Preparer;
import io.trellis2lora.orchestration.Sharding;
import java.io.IOException;
import java.io.UncheckedIOException;

/** The Prepare task of the state machine ({@code ${PrepareFunctionArn}}); all the work is in {@link Preparer}. */
public class PrepareHandler implements RequestHandler<JsonNode, JsonNode> {
    private Preparer preparer;

    @Override
    public JsonNode handleRequest(JsonNode event, Context context) {
        try {
            return Json.MAPPER.valueToTree(preparer().prepare(event));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private synchronized Preparer preparer() {
        if (preparer == null) {
            Services services = Services.fromEnvironment();
            preparer = new Preparer(services.requests(),
                    new ArchiveOpener(services.s3(), services.http(), services.config().dataBuckets()), System.getenv("TRELLIS2_BASE_MODEL"),
                    Preparer.options(System.getenv("TRELLIS2_PREPROCESS_OPTIONS")), Sharding.fromEnvironment(System::getenv));
        }
        return preparer;
    }
}
