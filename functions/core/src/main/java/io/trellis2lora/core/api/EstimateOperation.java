package io.trellis2lora.core.api;

import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;

/**
 * POST /estimate: the same checks as a submit and the price, starting nothing and keeping nothing. An archive that
 * cannot be inspected by ranged reads is not downloaded: its price is provisional, as on submit.
 */
public final class EstimateOperation extends ApiOperation {
    private final RequestValidator validator = new RequestValidator(RequestValidator.Mode.CLOUD);

    public EstimateOperation(Services services) {
        super(services);
    }

    @Override
    protected ApiResponse process(ApiRequest request) throws Exception {
        Assessment a = Assessment.of(request.body(), validator,
                new ArchiveOpener(services.s3(), services.http(), services.config().dataBuckets()), null);
        return ApiResponse.json(200, new Assessment(a.request(), null, a.inspection(), a.estimate()));
    }
}
