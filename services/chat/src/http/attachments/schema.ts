import Type from 'typebox'
import { MessageId, RoomId } from '../../domain/schemas.ts'

/** The `roomId` field of `POST /api/uploads`. */
export const UploadFields = Type.Object({ roomId: RoomId })

export const AttachmentParams = Type.Object({ id: MessageId })
