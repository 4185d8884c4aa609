package io.trellis2lora.core.api;

import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * An HTTP request as the API operations see it, whatever carried it (API Gateway, a local server, a test).
 *
 * @param caller who is calling, as the gateway authenticated them (the API key's id); null when it says nothing
 * @param query  the query string's parameters (the first value of each, as API Gateway's queryStringParameters)
 */
public record ApiRequest(String method, Map<String, String> headers, Map<String, String> pathParameters,
        String body, String baseUrl, String caller, Map<String, String> query) {

    public ApiRequest(String method, Map<String, String> headers, Map<String, String> pathParameters, String body,
            String baseUrl, String caller) {
        this(method, headers, pathParameters, body, baseUrl, caller, null);
    }

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
        query = query == null ? Map.of() : Map.copyOf(query);
        method = method == null ? "" : method.toUpperCase(Locale.ROOT);
    }

    public String header(String name) {
        return headers.get(name);
    }

    public String pathParameter(String name) {
        return pathParameters.get(name);
    }

    /** A query parameter's value, or null when the query string does not name it. */
    public String queryParameter(String name) {
        return query.get(name);
    }
}
