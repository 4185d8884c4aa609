package io.trellis2lora.infrastructure;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * What a role of the synthesised template may do to S3 objects and other resources, read from its policies the way
 * IAM reads them (Allow statements only; the stack writes no Deny into roles): action and resource wildcards.
 */
final class Permissions {
    private final String roleId;
    private final List<JsonNode> statements = new ArrayList<>();

    private Permissions(String roleId) {
        this.roleId = roleId;
        for (Map.Entry<String, JsonNode> p : Synth.resources("AWS::IAM::Policy").entrySet()) {
            for (JsonNode r : p.getValue().path("Properties").path("Roles")) {
                if (Synth.refersTo(r, roleId)) {
                    p.getValue().path("Properties").path("PolicyDocument").path("Statement").forEach(statements::add);
                }
            }
        }
        JsonNode role = Synth.json().path("Resources").path(roleId);
        for (JsonNode inline : role.path("Properties").path("Policies")) {
            inline.path("PolicyDocument").path("Statement").forEach(statements::add);
        }
    }

    static Permissions ofRole(String roleId) {
        return new Permissions(roleId);
    }

    /** The execution role of a Lambda function, by its construct id (e.g. "SubmitFunction"). */
    static Permissions ofFunction(String functionId) {
        JsonNode role = Synth.props("AWS::Lambda::Function", functionId).path("Role");
        return new Permissions(role.path("Fn::GetAtt").get(0).asText());
    }

    List<JsonNode> statements() {
        return statements;
    }

    String roleId() {
        return roleId;
    }

    /** May this role perform {@code action} on {@code key} in the bucket with this logical id? */
    boolean canObject(String action, String bucketId, String key) {
        for (JsonNode s : statements) {
            if (!"Allow".equals(s.path("Effect").asText()) || !actionMatches(s.path("Action"), action)) {
                continue;
            }
            for (JsonNode r : list(s.path("Resource"))) {
                if (r.isTextual() && r.asText().equals("*")) {
                    return true;
                }
                String pattern = objectPattern(r, bucketId);
                if (pattern != null && glob(pattern).matcher(key).matches()) {
                    return true;
                }
            }
        }
        return false;
    }

    /** May this role perform {@code action} on a resource whose template expression mentions a logical id? */
    boolean canOn(String action, String logicalId) {
        for (JsonNode s : statements) {
            if (!"Allow".equals(s.path("Effect").asText()) || !actionMatches(s.path("Action"), action)) {
                continue;
            }
            for (JsonNode r : list(s.path("Resource"))) {
                if ((r.isTextual() && r.asText().equals("*")) || Synth.mentions(r, logicalId)) {
                    return true;
                }
            }
        }
        return false;
    }

    /** Every action this role is allowed, as written. */
    List<String> actions() {
        List<String> out = new ArrayList<>();
        for (JsonNode s : statements) {
            for (JsonNode a : list(s.path("Action"))) {
                out.add(a.asText());
            }
        }
        return out;
    }

    private static boolean actionMatches(JsonNode actions, String action) {
        for (JsonNode a : list(actions)) {
            if (glob(a.asText()).matcher(action).matches()) {
                return true;
            }
        }
        return false;
    }

    /** {Fn::Join: ["", [{Fn::GetAtt: [bucket, Arn]}, "/key/pattern"]]} -> "key/pattern" when it is this bucket. */
    private static String objectPattern(JsonNode resource, String bucketId) {
        JsonNode join = resource.path("Fn::Join");
        if (!join.isArray() || join.size() != 2) {
            return null;
        }
        JsonNode parts = join.get(1);
        if (parts.size() != 2 || !Synth.refersTo(parts.get(0), bucketId) || !parts.get(1).isTextual()) {
            return null;
        }
        String suffix = parts.get(1).asText();
        return suffix.startsWith("/") ? suffix.substring(1) : null;
    }

    static List<JsonNode> list(JsonNode node) {
        List<JsonNode> out = new ArrayList<>();
        if (node.isArray()) {
            node.forEach(out::add);
        } else if (!node.isMissingNode()) {
            out.add(node);
        }
        return out;
    }

    /** IAM wildcards: * any run of characters (slashes included), ? one character. */
    static Pattern glob(String g) {
        StringBuilder b = new StringBuilder();
        for (char c : g.toCharArray()) {
            switch (c) {
                case '*' -> b.append(".*");
                case '?' -> b.append('.');
                default -> b.append(Pattern.quote(String.valueOf(c)));
            }
        }
        return Pattern.compile(b.toString(), Pattern.CASE_INSENSITIVE);
    }
}
