package io.trellis2lora.core.api;

import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.S3Stager;
import java.util.UUID;

/** POST /estimate: the same checks as a submit and the price, starting nothing and keeping nothing. */
public final class EstimateOperation extends ApiOperation {
    private final RequestValidator validator = new RequestValidator(RequestValidator.Mode.CLOUD);

    public EstimateOperation(Services services) {
        super(services);
    }

    @Override
    protected ApiResponse process(ApiRequest request) throws Exception {
        var stager = new S3Stager(services.s3(), services.config().requestsBucket(),
                StorageLayout.estimateStaging(UUID.randomUUID().toString()));
        Assessment a = Assessment.of(request.body(), validator, new ArchiveOpener(services.s3(), services.http()),
                stager);
        if (!a.inputUri().equals(a.request().dataUrl())) {
            stager.discard(a.inputUri());
        }
        return ApiResponse.json(200, new Assessment(a.request(), null, a.inspection(), a.estimate()));
    }
}
