package io.trellis2lora.core.api;

import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * An HTTP request as the API operations see it, whatever carried it (API Gateway, a local server, a test).
 *
 * @param caller who is calling, as the gateway authenticated them (the API key's id); null when it says nothing
 */
public record ApiRequest(String method, Map<String, String> headers, Map<String, String> pathParameters,
        String body, String baseUrl, String caller) {

    public ApiRequest(String method, Map<String, String> headers, Map<String, String> pathParameters, String body,
            String baseUrl) {
        this(method, headers, pathParameters, body, baseUrl, null);
    }

    public ApiRequest {
        TreeMap<String, String> h = new TreeMap<>(String.CASE_INSENSITIVE_ORDER);
        if (headers != null) {
            headers.forEach((k, v) -> {
                if (k != null && v != null) {
                    h.put(k, v);
                }
            });
        }
        headers = h;
        pathParameters = pathParameters == null ? Map.of() : Map.copyOf(pathParameters);
        method = method == null ? "" : method.toUpperCase(Locale.ROOT);
    }

    public String header(String name) {
        return headers.get(name);
    }

    public String pathParameter(String name) {
        return pathParameters.get(name);
    }
}
