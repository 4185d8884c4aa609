package io.trellis2lora.core.api;

import io.trellis2lora.core.InputRefusedException;

/**
 * One API endpoint. {@link #handle} never throws: refused input is a 400 with its reasons, anything unexpected a
 * 500 that names no internals (the details go to the log).
 */
public abstract class ApiOperation {
    protected final Services services;

    protected ApiOperation(Services services) {
        this.services = services;
    }

    public final ApiResponse handle(ApiRequest request) {
        try {
            return process(request);
        } catch (InputRefusedException e) {
            return ApiResponse.refused(e);
        } catch (Exception e) {
            System.err.println(getClass().getSimpleName() + " failed: " + e);
            e.printStackTrace();
            return ApiResponse.error(500, "internal error; try again later");
        }
    }

    protected abstract ApiResponse process(ApiRequest request) throws Exception;

    /** The request id from the path, refused (400) unless it has the shape of one. */
    protected static String requestId(ApiRequest request) {
        String id = request.pathParameter("request_id");
        if (!io.trellis2lora.core.storage.StorageLayout.isValidRequestId(id)) {
            throw new InputRefusedException("path must name a request id (letters, digits and dashes)");
        }
        return id;
    }

    protected String baseUrl(ApiRequest request) {
        if (services.config().apiBaseUrl() != null) {
            return services.config().apiBaseUrl();
        }
        return request.baseUrl() == null ? "" : request.baseUrl();
    }
}
