package io.trellis2lora.core.validation;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;
import java.math.BigDecimal;
import java.net.URI;
import java.net.URISyntaxException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Turns a request body into a {@link TrainingRequest}, reporting every problem at once (one line each). Anything a
 * client can send ends in either a request or an {@link InputRefusedException}: never an unchecked surprise.
 */
public final class RequestValidator {

    /** Local mode (the command line, the local runner) also accepts local paths as {@code data_url}. */
    public enum Mode { CLOUD, LOCAL }

    static final Set<String> FIELDS = Set.of(
            "data_url", "denoisers", "resolution", "rank", "learning_rate", "training_steps", "evaluate");
    static final BigDecimal MIN_LR = new BigDecimal("1e-6");
    static final BigDecimal MAX_LR = new BigDecimal("1e-2");

    private final Mode mode;

    public RequestValidator(Mode mode) {
        this.mode = mode;
    }

    public TrainingRequest parse(String body) {
        if (body == null || body.isBlank()) {
            throw new InputRefusedException("request body is empty: send a JSON object");
        }
        JsonNode node;
        try {
            node = Json.MAPPER.readTree(body);
        } catch (JsonProcessingException e) {
            throw new InputRefusedException("request body is not valid JSON: " + Json.problem(e));
        }
        return validate(node);
    }

    public TrainingRequest validate(JsonNode node) {
        if (node == null || !node.isObject()) {
            throw new InputRefusedException("request body must be a JSON object, got "
                    + (node == null ? "nothing" : kind(node)));
        }
        List<String> problems = new ArrayList<>();
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            String name = it.next();
            if (name.equals("fal_webhook")) {
                // The hosted queue takes it beside the body, not in it.
                problems.add("fal_webhook is a query parameter of the submit (POST /requests?fal_webhook=URL), "
                        + "not a field of the request body");
            } else if (!FIELDS.contains(name)) {
                problems.add("unknown field '" + name + "' (known: data_url, denoisers, resolution, rank, "
                        + "learning_rate, training_steps, evaluate)");
            }
        }
        String dataUrl = dataUrl(present(node, "data_url"), problems);
        List<Denoiser> denoisers = denoisers(present(node, "denoisers"), problems);
        int resolution = choice(node, "resolution", TrainingRequest.DEFAULT_RESOLUTION, Set.of(512, 1024),
                "512 or 1024", problems);
        int rank = choice(node, "rank", TrainingRequest.DEFAULT_RANK, Set.of(16, 32, 64), "16, 32 or 64", problems);
        BigDecimal lr = learningRate(present(node, "learning_rate"), problems);
        int steps = trainingSteps(present(node, "training_steps"), problems);
        boolean evaluate = evaluate(present(node, "evaluate"), problems);
        if (!problems.isEmpty()) {
            throw new InputRefusedException(problems);
        }
        return new TrainingRequest(dataUrl, denoisers, resolution, rank, lr, steps, evaluate);
    }

    /** A field given as JSON null counts as absent, so it takes its default. */
    private static JsonNode present(JsonNode node, String field) {
        JsonNode v = node.get(field);
        return v == null || v.isNull() ? null : v;
    }

    private String dataUrl(JsonNode v, List<String> problems) {
        if (v == null) {
            problems.add("data_url is required");
            return null;
        }
        if (!v.isTextual()) {
            problems.add("data_url must be a string, got " + kind(v));
            return null;
        }
        String url = v.textValue().strip();
        if (url.isEmpty()) {
            problems.add("data_url must not be empty");
            return null;
        }
        String problem = checkDataUrl(url, mode);
        if (problem != null) {
            problems.add(problem);
        }
        return url;
    }

    /** Null when {@code url} is acceptable as data_url in {@code mode}, else the reason. */
    public static String checkDataUrl(String url, Mode mode) {
        String lower = url.toLowerCase(Locale.ROOT);
        boolean hasScheme = lower.matches("^[a-z][a-z0-9+.-]*://.*");
        if (!hasScheme) {
            if (mode == Mode.LOCAL) {
                return null;
            }
            return "data_url must be an https:// or s3:// URL (local paths only work in local mode), got '"
                    + abbreviate(url) + "'";
        }
        if (lower.startsWith("s3://")) {
            String rest = url.substring(5);
            int slash = rest.indexOf('/');
            if (slash <= 0 || slash == rest.length() - 1) {
                return "data_url '" + abbreviate(url) + "' must look like s3://bucket/key.zip";
            }
            return null;
        }
        if (lower.startsWith("https://")) {
            try {
                URI uri = new URI(url);
                if (uri.getHost() == null || uri.getHost().isEmpty()) {
                    return "data_url '" + abbreviate(url) + "' has no host name";
                }
                if (uri.getUserInfo() != null) {
                    return "data_url must not carry credentials (user:password@)";
                }
            } catch (URISyntaxException e) {
                return "data_url is not a valid URL: " + e.getReason();
            }
            return null;
        }
        return "data_url must be an https:// or s3:// URL, got scheme '" + lower.substring(0, lower.indexOf(':'))
                + "'";
    }

    private static List<Denoiser> denoisers(JsonNode v, List<String> problems) {
        if (v == null) {
            return TrainingRequest.DEFAULT_DENOISERS;
        }
        if (!v.isArray()) {
            problems.add("denoisers must be an array of stage names, got " + kind(v));
            return List.of();
        }
        if (v.size() < 1 || v.size() > 3) {
            problems.add("denoisers must name 1 to 3 stages, got " + v.size());
        }
        Set<Denoiser> seen = new LinkedHashSet<>();
        for (int i = 0; i < v.size(); i++) {
            JsonNode item = v.get(i);
            if (!item.isTextual()) {
                problems.add("denoisers[" + i + "] must be a string, got " + kind(item));
                continue;
            }
            var d = Denoiser.fromWire(item.textValue());
            if (d.isEmpty()) {
                problems.add("denoisers[" + i + "] '" + abbreviate(item.textValue())
                        + "' is not one of sparse_structure, geometry, texture");
            } else if (!seen.add(d.get())) {
                problems.add("denoisers lists '" + d.get() + "' more than once");
            }
        }
        return List.copyOf(seen);
    }

    private static int choice(JsonNode node, String field, int dflt, Set<Integer> allowed, String allowedText,
            List<String> problems) {
        JsonNode v = present(node, field);
        if (v == null) {
            return dflt;
        }
        if (!v.isIntegralNumber()) {
            problems.add(field + " must be an integer (" + allowedText + "), got " + kind(v));
            return dflt;
        }
        if (!v.canConvertToInt() || !allowed.contains(v.intValue())) {
            problems.add(field + " must be " + allowedText + ", got " + abbreviate(v.asText()));
            return dflt;
        }
        return v.intValue();
    }

    private static BigDecimal learningRate(JsonNode v, List<String> problems) {
        if (v == null) {
            return TrainingRequest.DEFAULT_LEARNING_RATE;
        }
        if (!v.isNumber()) {
            problems.add("learning_rate must be a number, got " + kind(v));
            return TrainingRequest.DEFAULT_LEARNING_RATE;
        }
        BigDecimal lr = v.decimalValue();
        if (lr.compareTo(MIN_LR) < 0 || lr.compareTo(MAX_LR) > 0) {
            problems.add("learning_rate must be between 1e-6 and 1e-2, got " + abbreviate(v.asText()));
            return TrainingRequest.DEFAULT_LEARNING_RATE;
        }
        return lr.stripTrailingZeros();
    }

    private static int trainingSteps(JsonNode v, List<String> problems) {
        if (v == null) {
            return TrainingRequest.DEFAULT_TRAINING_STEPS;
        }
        if (!v.isIntegralNumber()) {
            problems.add("training_steps must be an integer, got " + kind(v));
            return TrainingRequest.DEFAULT_TRAINING_STEPS;
        }
        if (!v.canConvertToInt() || v.intValue() < 100 || v.intValue() > 10000) {
            problems.add("training_steps must be between 100 and 10000, got " + abbreviate(v.asText()));
            return TrainingRequest.DEFAULT_TRAINING_STEPS;
        }
        return v.intValue();
    }

    private static boolean evaluate(JsonNode v, List<String> problems) {
        if (v == null) {
            return TrainingRequest.DEFAULT_EVALUATE;
        }
        if (!v.isBoolean()) {
            problems.add("evaluate must be true or false, got " + kind(v));
            return TrainingRequest.DEFAULT_EVALUATE;
        }
        return v.booleanValue();
    }

    static String kind(JsonNode v) {
        if (v.isTextual()) {
            return "a string";
        }
        if (v.isIntegralNumber()) {
            return "the integer " + abbreviate(v.asText());
        }
        if (v.isNumber()) {
            return "the number " + abbreviate(v.asText());
        }
        if (v.isBoolean()) {
            return "a boolean";
        }
        if (v.isArray()) {
            return "an array";
        }
        if (v.isObject()) {
            return "an object";
        }
        if (v.isNull()) {
            return "null";
        }
        return v.getNodeType().toString().toLowerCase(Locale.ROOT);
    }

    static String abbreviate(String s) {
        return s.length() <= 80 ? s : s.substring(0, 77) + "...";
    }
}
