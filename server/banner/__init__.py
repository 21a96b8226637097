"""The cookie banner's server side: per-site configuration and the public record endpoint."""
