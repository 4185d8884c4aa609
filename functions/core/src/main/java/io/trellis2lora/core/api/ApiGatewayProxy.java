package io.trellis2lora.core.api;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Converts API Gateway Lambda-proxy events (REST API, and HTTP API payload 1.0 and 2.0) to {@link ApiRequest} and
 * back, as plain maps, so that the core needs no Lambda library and every handler stays a few lines.
 */
public final class ApiGatewayProxy {
    private ApiGatewayProxy() {
    }

    public static Map<String, Object> handle(Map<String, Object> event, ApiOperation operation) {
        ApiRequest request;
        try {
            request = toRequest(event == null ? Map.of() : event);
        } catch (IllegalArgumentException e) {
            return toEvent(ApiResponse.error(400, "request body is not valid base64"));
        }
        return toEvent(operation.handle(request));
    }

    @SuppressWarnings("unchecked")
    public static ApiRequest toRequest(Map<String, Object> event) {
        Map<String, String> headers = stringMap(event.get("headers"));
        Map<String, String> path = stringMap(event.get("pathParameters"));
        Map<String, Object> ctx = event.get("requestContext") instanceof Map<?, ?> m ? (Map<String, Object>) m
                : Map.of();
        String method = str(event.get("httpMethod"));
        if (method == null && ctx.get("http") instanceof Map<?, ?> http) {
            method = str(http.get("method"));
        }
        String body = str(event.get("body"));
        if (body != null && Boolean.TRUE.equals(event.get("isBase64Encoded"))) {
            body = new String(Base64.getDecoder().decode(body), StandardCharsets.UTF_8);
        }
        String host = str(ctx.get("domainName"));
        if (host == null) {
            host = headers.entrySet().stream().filter(e -> e.getKey().equalsIgnoreCase("host"))
                    .map(Map.Entry::getValue).findFirst().orElse(null);
        }
        String stage = str(ctx.get("stage"));
        String base = host == null ? null
                : "https://" + host + (stage == null || stage.equals("$default") ? "" : "/" + stage);
        // REST APIs with usage plans put the caller's API key under requestContext.identity; its id, not the key.
        String caller = null;
        if (ctx.get("identity") instanceof Map<?, ?> identity) {
            caller = str(identity.get("apiKeyId"));
        }
        // REST and HTTP APIs both pass the query as queryStringParameters (URL-decoded, one value per name).
        return new ApiRequest(method, headers, path, body, base, caller == null || caller.isBlank() ? null : caller,
                stringMap(event.get("queryStringParameters")));
    }

    public static Map<String, Object> toEvent(ApiResponse response) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("statusCode", response.status());
        out.put("headers", Map.of("Content-Type", "application/json", "Cache-Control", "no-store"));
        out.put("body", response.body());
        out.put("isBase64Encoded", false);
        return out;
    }

    private static Map<String, String> stringMap(Object o) {
        Map<String, String> out = new LinkedHashMap<>();
        if (o instanceof Map<?, ?> m) {
            m.forEach((k, v) -> {
                if (k != null && v != null) {
                    out.put(k.toString(), v.toString());
                }
            });
        }
        return out;
    }

    private static String str(Object o) {
        return o == null ? null : o.toString();
    }
}
