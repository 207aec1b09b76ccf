//! Errors of the compression layer.

/// What can go wrong compressing a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sparsity outside (0, 1).
    #[error("sparsity {0}: must be between 0 and 1 (exclusive), e.g. 0.5")]
    Sparsity(f64),
    /// Bits per weight outside what the formats support.
    #[error("{0} bits per weight: supported are 2 to 8 (GPTQ uses 4 or 3, int8 8)")]
    Bits(i64),
    /// A bad n:m pattern or block setting.
    #[error("pattern: {0}")]
    Pattern(String),
    /// Tensors of shapes that do not fit together.
    #[error("shape: {0}")]
    Shape(String),
    /// The damped Hessian is not positive definite.
    #[error(
        "the layer's input Hessian is not positive definite ({0}): use more calibration \
         sequences or a larger damping"
    )]
    NotPositiveDefinite(String),
    /// A method that needs calibration inputs got none.
    #[error(
        "this method (SparseGPT, GPTQ, int8 smoothing) needs calibration inputs (the model's \
         inputs on real text); none were given"
    )]
    NoCalibration,
    /// The model refused an input or a layer index.
    #[error(transparent)]
    Model(#[from] cloze_models::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
